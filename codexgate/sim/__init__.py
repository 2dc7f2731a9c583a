"""Building blocks of the simulated model provider; see :mod:`codexgate.simprovider` for what it
does and how to run it."""
