"""Compatibility package: ``from azureml_user.parallel_run import EntryScript`` works in daskprs."""
