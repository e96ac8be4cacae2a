# Docker targets (included by the Makefile). The image stages are described in the Dockerfile.
COMPOSE ?= docker compose
IMAGE   ?= ai-from-scratch

.PHONY: docker-build docker-build-base docker-build-dev docker-build-prod docker-up docker-up-cpu docker-down docker-logs

docker-build: docker-build-base docker-build-dev docker-build-prod ## Build every image stage (base, dev, prod)

docker-build-base: ## Build the base stage (CUDA runtime + cuDNN, Python, Poetry)
	docker build --target base -t $(IMAGE):base .

docker-build-dev: ## Build the dev stage (all groups, JupyterLab)
	docker build --target dev -t $(IMAGE):dev .

docker-build-prod: ## Build the prod stage (headless notebooks + CLI)
	docker build --target prod -t $(IMAGE):prod .

docker-up: ## JupyterLab in the container with the GPU (http://localhost:8888, token in the logs)
	@mkdir -p data outputs wandb
	$(COMPOSE) up -d jupyter
	@echo "token: $(COMPOSE) logs jupyter | grep token   |  check the GPU: $(COMPOSE) exec jupyter make doctor"

docker-up-cpu: ## JupyterLab in the container without a GPU
	@mkdir -p data outputs wandb
	$(COMPOSE) --profile cpu up -d jupyter-cpu
	@echo "token: $(COMPOSE) logs jupyter-cpu | grep token"

docker-down: ## Stop the containers (data, outputs and caches persist)
	$(COMPOSE) --profile cpu down

docker-logs: ## Follow JupyterLab's log (shows the login URL with its token)
	$(COMPOSE) --profile cpu logs -f
