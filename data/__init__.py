"""sigflow's synthetic example ECG records (installed as ``sigflow._example_data``).

Use :func:`sigflow.ecg.example_records` to get their paths.
"""
