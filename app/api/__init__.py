"""HTTP surfaces: native (/predict), TF Serving REST (/v1) and Open Inference Protocol (/v2)."""
