from feredge.cli import main

main()
