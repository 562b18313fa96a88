"""Mirror trading: a second account that follows the main one.

:mod:`~engine.mirror.sizing` (pure) sizes a mirror trade from the main one; :mod:`~engine.mirror.drift`
(pure) compares the two legs of a mirrored trade and says what is out of line and how to repair it;
:mod:`~engine.mirror.follower` (the shell) opens the mirror trades, forwards the operator's actions
from a persisted retry queue, and runs the drift check as a job of the engine's scheduler. A mirror
trade is an ordinary monitor on the ``mirror`` account, run by the same TP/SL engine on its own fills.
"""
