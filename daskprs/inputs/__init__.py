"""Turn datasets into planned mini-batches, and read one mini-batch on a worker."""
