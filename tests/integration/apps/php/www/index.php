<?php echo "root index";
