import sys

from keras_sparse_cli import main

sys.exit(main())
