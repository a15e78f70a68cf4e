"""durox.core: the sans-IO heart of durox.

Pure values and pure functions: history events, work items, the replay
engine and everything an orchestration can ask for. Nothing here performs
I/O, reads a clock, sleeps, spawns threads or draws random numbers; time and
entropy come in as arguments and are recorded in history.
"""
