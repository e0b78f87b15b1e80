"""`streamlit run app.py` from the repo: runs the packaged dashboard, splitimpera/dashboard/app.py."""

import runpy

runpy.run_module("splitimpera.dashboard.app", run_name="__main__")
