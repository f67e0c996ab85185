from warden_ml.cli import main
from warden_ml.dist import exit_rank

exit_rank(main())
