"""The central service: sheds of many compounds, their records, commands and payments.

Start with `uvicorn --factory api.main:create_app_from_env` (see docs/api.md).
"""
