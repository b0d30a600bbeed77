from pgperfmon.cli import main

main()
