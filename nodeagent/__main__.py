from ketch.benchprofile import profiled
from nodeagent.main import main

with profiled("nodeagent"):
    main()
