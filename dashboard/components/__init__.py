"""Reusable view pieces: plotly chart builders, model cards, teaching notes."""
