"""The dashboard's pages: scripts Streamlit runs by path from ``../app.py``'s ``st.navigation``, not modules to import."""
