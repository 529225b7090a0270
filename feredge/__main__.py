from feredge.commands.cli import main

main()
