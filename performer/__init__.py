"""The live performer and everything a musician touches (no torch here)."""
