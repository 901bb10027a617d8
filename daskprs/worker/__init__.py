"""Code that runs on Dask workers: the WorkerPlugin, the runner process, the wrapper."""
