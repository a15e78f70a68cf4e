"""Runtimes and clients for trio, asyncio and threads.

Importing this package imports no concurrency framework; import
``durox.drivers.trio``, ``durox.drivers.asyncio`` or ``durox.drivers.threads``.
"""
