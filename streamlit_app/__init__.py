"""leuk's Streamlit dashboard: ``streamlit run streamlit_app/app.py`` (a thin view over :mod:`leuk.serving`).

``app.py`` is the entry (``st.navigation``); ``views/`` holds one script per page; :mod:`streamlit_app.ui`
holds what the pages share (cached access to the serving layer, the model picker, notices, error display)
and :mod:`streamlit_app.charts` the Altair charts drawn from :mod:`leuk.experiments.plots`' long-format tables.
"""
