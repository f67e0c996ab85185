import sys

from warden_ml.cli import main

sys.exit(main())
