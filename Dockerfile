# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROVENANCE_DATA_DIR=/var/lib/provenance \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY manage.py ./
COPY provenance ./provenance
COPY templates ./templates
COPY static ./static
# collectstatic needs settings, not secrets: a throwaway key for this one build step.
RUN SECRET_KEY=build-only-not-secret python manage.py collectstatic --no-input --verbosity 0 \
    && useradd --system --uid 10001 --home-dir /var/lib/provenance provenance \
    && mkdir -p /var/lib/provenance && chown provenance /var/lib/provenance

USER provenance
EXPOSE 8000
CMD ["gunicorn", "provenance.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
