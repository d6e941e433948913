"""A spawn pool: multiprocessing's Connection objects are finalized at interpreter exit, after
Python has set the globals of the modules to None, and their __del__ calls a traced _close."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        print(pool.submit(pow, 2, 5).result())
