"""Small FastAPI apps that the subprocess tests serve with uvicorn."""
