# hubgate: a slim image running `hubgate serve`. Production shape: see docker-compose.yml (external Redis).
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN useradd --system --create-home --home-dir /var/lib/hubgate hubgate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config /etc/hubgate
ENV HUBGATE_HOST=0.0.0.0 \
    HUBGATE_PORT=8080 \
    HUBGATE_DATA_DIR=/var/lib/hubgate/data \
    HUBGATE_POLICY=/etc/hubgate/policy.toml \
    HUBGATE_CONFIG=/etc/hubgate/hubgate.toml
USER hubgate
WORKDIR /var/lib/hubgate
VOLUME ["/var/lib/hubgate/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
ENTRYPOINT ["hubgate"]
CMD ["serve"]
