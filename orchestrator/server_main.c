#include <stdio.h>
int main(void)
{
	fputs("capstan-server: not built yet\n", stderr);
	return 1;
}
