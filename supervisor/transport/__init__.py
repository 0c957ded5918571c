"""Network edges: gRPC servicers and the error-to-status table."""
