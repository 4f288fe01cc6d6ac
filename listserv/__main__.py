"""Run the command line: python -m listserv."""
from listserv.cli.main import main

main()
