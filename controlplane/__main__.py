from controlplane.main import main
from ketch.benchprofile import profiled

with profiled("controlplane"):
    main()
