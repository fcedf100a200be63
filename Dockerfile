# Rewind in a container: gunicorn (gthread) with git, GnuPG and the PostgreSQL client tools.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git gnupg postgresql-client \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 rewind
WORKDIR /srv/rewind
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY --chown=rewind:rewind . .

USER rewind
ENV FLASK_APP=wsgi \
    REWIND_BIND=0.0.0.0:5000 \
    REWIND_INSTANCE_DIR=/srv/rewind/instance
EXPOSE 5000
VOLUME ["/srv/rewind/instance"]
CMD ["sh", "-c", "flask db upgrade && flask rewind init-admin && exec gunicorn -c gunicorn.conf.py"]
