"""The real split run: ``serve`` (the tail), ``device`` (the head) and ``measure`` (both on
this machine, side by side with the simulation). Frames are in :mod:`.wire`."""
