"""pytest set-up: the tests run TensorFlow as the entry points do.

Test modules import tensorflow before the project's libraries, so oneDNN is
turned on here, before any of them loads (a TF_ENABLE_ONEDNN_OPTS set by the
user still wins).
"""

import runtime

runtime.setup()
