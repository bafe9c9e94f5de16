"""`cardiacquan batch`: a cohort of studies quantified on Dask (local or any cluster), resumable.

inputs.py (which studies), fingerprint.py (what is already done), task.py (one study on a
worker), cohort.py (the cohort and failures tables), cluster.py (the Dask client and its layout),
runner.py (submitting, collecting, progress), commands.py (the command line).
"""
