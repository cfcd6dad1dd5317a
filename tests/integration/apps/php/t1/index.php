<?php echo "t1 ", $_SERVER["SCRIPT_NAME"], " ", $_SERVER["DOCUMENT_ROOT"];
