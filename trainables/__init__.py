"""The science of a CRoPD trial: data, foundation model, pre-processors, losses.

Plain Python with dict configs and a working directory; never imports `orchestrator`
so every stage runs and tests without Ray.
"""
