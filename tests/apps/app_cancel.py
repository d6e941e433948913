"""Runs the cancellations of ``cancelwork`` with ``asyncio.run``."""

import asyncio

import cancelwork

asyncio.run(cancelwork.main())
