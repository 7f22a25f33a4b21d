"""The Streamlit app shell: entrypoint, session state, cache wrappers and components."""
