"""Lightning callbacks that litlab adds to runs (each selectable in conf/callbacks/)."""
