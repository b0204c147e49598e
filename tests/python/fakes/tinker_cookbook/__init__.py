"""Fake of tinker-cookbook (https://github.com/thinking-machines-lab/tinker-cookbook):
only the shapes sail_tinker's drop-in tests use."""
