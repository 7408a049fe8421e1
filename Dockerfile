# leuk dashboard (Streamlit) for a Hugging Face Docker Space (`sdk: docker`, `app_port: 8501`) or any container host.
#   docker build -t leuk-dashboard .
#   docker run -p 8501:8501 -e LEUK_MODELS=org/model@<revision> leuk-dashboard     # then open http://localhost:8501
# Without LEUK_MODELS the bundled demo models (assets/demo_models/, synthetic training data) are served.
FROM python:3.11-slim

# libgomp1: OpenMP runtime for torch/scikit-learn; libglib2.0-0: needed by OpenCV even in its headless build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# Spaces run containers as uid 1000: install and run as that user, with a writable home (Hugging Face cache).
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONPATH=/home/user/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/user/.cache/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_CLIENT_TOOLBAR_MODE=viewer
# A Space shows the app in an iframe, where browsers drop Streamlit's XSRF cookie and uploads fail with 403.
# The app has no login and no state worth forging a request for; set it to true when not served in an iframe.
ENV STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=false
WORKDIR /home/user/app

# Dependencies first, so that code changes do not reinstall them.
COPY --chown=user requirements.txt .
RUN pip install --user -r requirements.txt
COPY --chown=user . .

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "streamlit_app/app.py", "--server.port", "8501", "--server.address", "0.0.0.0", \
     "--server.headless", "true"]
