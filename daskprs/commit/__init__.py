"""The commit protocol: how a mini-batch's result becomes part of the output exactly once.

::

    <output>/_daskprs/
      readme.txt                          this protocol, for someone who opens the folder
      lock.json                           the live job (pid, host, run_id)
      fingerprint.json                    fingerprint, status, run_id and the runs that
                                          share the fingerprint (a resume chain)
      commits/<run_id>/<task>.bundle      one object per Dask task: the commit point
      assembly/                           the final output while it is being written

- **One commit per task.** A Dask task runs a few consecutive mini-batches (each with its
  own attempts, ``run_max_try``, timeouts), then writes one *bundle*: a JSON header with
  a status record per mini-batch, followed by the results of the succeeded ones. The
  bundle is created exclusively (a hard link of a complete file on local disk, a
  conditional PUT with ``If-None-Match: *`` on S3 and Azure), so it appears whole or not
  at all, and the first execution of a task wins; a later duplicate (Dask rerunning a
  task whose result never reached the client) reads the winner's header and returns it.
- **Names.** ``<task>`` is ``<first index>-<last index>-<submission>``; a resubmission by
  the client (after ``KilledWorker``, or from an unhealthy worker) has a new submission
  number. Every record names its ``run_id``; the client accepts records only from the
  tasks of its own run, and a resumed run reads bundles only of the runs listed in
  ``fingerprint.json``, so a killed client's leftover runners can never mix their results
  into a later run.
- **Attempts.** No marker objects: each attempt sends a small event (mini-batch, attempt,
  worker, runner pid, time) to the scheduler, which the client follows; an attempt that
  started on a worker that was then lost becomes a ``worker_lost`` row, not charged.
- **Resume.** The headers of the bundles of the runs in the resume chain tell which
  mini-batches are committed; only the others run.
- **Assembly and clean-up.** The client writes results in mini-batch order from the
  bundles (one read per bundle), publishes the output atomically, then removes
  ``commits/`` by prefix (batched deletes on S3 and Azure).
"""

from daskprs.commit.bundle import BundleReader, decode_header, encode_bundle
from daskprs.commit.store import STATE_DIR, StateStore, task_name

__all__ = ["STATE_DIR", "BundleReader", "StateStore", "decode_header", "encode_bundle",
           "task_name"]
