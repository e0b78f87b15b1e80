"""The Streamlit what-if dashboard: ``app.py`` here is the script ``splitimpera dashboard`` runs.

It lives in its own folder because Streamlit puts the script's folder on ``sys.path``.
"""
