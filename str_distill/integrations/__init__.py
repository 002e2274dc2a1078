"""Adapters to engines that run str-distill at scale; each is imported on its own (``str_distill.integrations.ray``)
and needs its engine installed (``pip install "str-distill[ray]"``)."""
