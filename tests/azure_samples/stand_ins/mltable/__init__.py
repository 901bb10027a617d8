"""Stand-in for Azure's ``mltable`` package, for the vendored v2 samples only.

``partition_data.py`` and ``parallel_train.py`` (1a_oj_sales_prediction) ``import mltable``
but never call it (the MLTable file is written with pyyaml). The real package pulls in
azureml-dataprep and pins pyarrow below the version daskprs uses, so the sample tests put
this empty module on ``PYTHONPATH`` instead. daskprs itself reads MLTable files without it
(:mod:`daskprs.inputs.mltable`).
"""
