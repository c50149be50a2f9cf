# One image for every service: worker, flower, beat, webhook, sandbox.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY tasks ./tasks
RUN pip install . && useradd --create-home dispatcher
USER dispatcher
ENTRYPOINT ["dispatcher"]
CMD ["--help"]
