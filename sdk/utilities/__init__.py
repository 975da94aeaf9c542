"""``sdk.utilities``: Prefect's ``prefect.utilities`` paths that flow code imports."""
