"""Wire types: pydantic models of the Kubernetes objects and interLink plugin messages."""
