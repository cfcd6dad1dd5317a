<?php echo "t2 ", $_SERVER["SCRIPT_NAME"], " ", $_SERVER["DOCUMENT_ROOT"];
