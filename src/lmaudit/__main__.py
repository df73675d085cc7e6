from lmaudit.cli import main

main()
