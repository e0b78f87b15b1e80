"""The real split run: ``serve`` (the tail, :mod:`.server`), ``device`` (the head,
:mod:`.device`) and ``measure`` (both on this machine, compared with the simulation,
:mod:`.compare`). Frames are in :mod:`.wire`."""
