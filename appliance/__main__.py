import sys

from appliance.commands.cli import main

sys.exit(main())
