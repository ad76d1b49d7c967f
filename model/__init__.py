"""The network and its vocabulary. ``model.drums`` needs only numpy; the torch
modules live in ``model.vae`` and are imported only by training and export."""
