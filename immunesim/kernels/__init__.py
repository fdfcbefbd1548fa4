"""Scalar rule functions, one module per phase.

Each rule decides for one cell (or one site) from the state at the start of its phase and
returns what it wants to do; the backends map the rules over cells and sites and resolve
conflicts (two cells wanting one site) by the lowest priority key. Rules are compiled with
numba (``njit``) and touch only their arguments and ``uint64``/``int`` module constants, so
that a GPU backend can compile the same source for the device.
"""
